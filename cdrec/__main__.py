from cdrec.cli.main import main

main()
