from lianchuang_cli.main import main

main()
