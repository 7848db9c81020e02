from graphtune.cli import main

main()
