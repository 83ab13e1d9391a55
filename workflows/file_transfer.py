"""File transfers around a task: a file copied in before it runs, its output copied out after.

Dispatch with `cov dispatch workflows/file_transfer.py --wait`. Everything stays on this machine
(local copies, no network); the files live in /tmp/cov-file-transfer-example-<uid>/. For copies
to and from other hosts (rsync over ssh, or the SSH executor's own connection) see
docs/executors.md, "File transfers".
"""
import os
import tempfile

import covalent as ct

BASE = os.path.join(tempfile.gettempdir(), f"cov-file-transfer-example-{os.getuid()}")
INBOX = os.path.join(BASE, "inbox", "message.txt")
SCRATCH = os.path.join(BASE, "scratch")
OUTBOX = os.path.join(BASE, "outbox", "shout.txt")

# The input the workflow starts from (written when the script is dispatched).
os.makedirs(os.path.dirname(INBOX), exist_ok=True)
with open(INBOX, "w") as f:
    f.write("hello from a file\n")


@ct.electron(files=[
    # before the task (the default order), a local copy (the default for two local paths)
    ct.fs.FileTransfer(INBOX, os.path.join(SCRATCH, "message.txt")),
    # after the task: what it wrote goes to the outbox
    ct.fs.FileTransfer(os.path.join(SCRATCH, "shout.txt"), OUTBOX, order=ct.fs.Order.AFTER,
                       strategy=ct.fs_strategies.Shutil()),
])
def shout(files=[]):
    """``files`` holds one (from, to) pair per transfer, in the order given."""
    (_, message), (result, _) = files
    with open(message) as f:
        text = f.read().upper()
    with open(result, "w") as f:
        f.write(text)
    return text.strip()


@ct.electron
def report(text):
    with open(OUTBOX) as f:  # copied there after `shout` ended
        return {"text": text, "copied_out": f.read().strip() == text}


@ct.lattice
def file_transfer():
    """Copies a file in, shouts it, copies the result out."""
    return report(shout())
