"""`transx`: the command line of a TransX node, wallet and market tools (transx_cli/, one module per group).

Every command prints readable tables by default and a JSON document with
`--json`.  Bad input is one line on stderr and exit status 2.
"""

from transx_cli.main import main

if __name__ == "__main__":
    main(prog_name="transx")
