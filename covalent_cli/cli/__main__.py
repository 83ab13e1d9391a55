from covalent_cli.cli.main import main

main()
