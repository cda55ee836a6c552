"""What wires the domains together: the one pack rule, the build-step registry and the demo.

Everything may be imported from here and nothing below (the ground floor, core, the data layers and
the domains' libraries) imports this package; only the commands (`twin/cli.py`,
`twin/<domain>/commands.py`) do.
"""
