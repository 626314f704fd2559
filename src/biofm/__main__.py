from biofm.cli import main

main()
