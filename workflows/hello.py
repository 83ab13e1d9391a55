"""A chain of three tasks: the smallest workflow. Dispatch with `cov dispatch workflows/hello.py --wait`."""
import covalent as ct


@ct.electron
def greet(name):
    print(f"greeting {name}")
    return f"Hello, {name}"


@ct.electron
def shout(text):
    return text.upper() + "!"


@ct.electron
def count(text):
    return {"text": text, "letters": sum(c.isalpha() for c in text)}


@ct.lattice
def hello(name="world"):
    """Greets someone loudly and counts the letters."""
    return count(shout(greet(name)))
