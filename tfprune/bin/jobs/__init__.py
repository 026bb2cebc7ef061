"""The work of each command-line tool, done once its flags parse.

``<name>.py`` here runs ``tfprune-<name>`` (its flags and help live in ``tfprune/bin/<name>.py``).
"""
