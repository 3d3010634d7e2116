from peachdw.cli import main

main()
