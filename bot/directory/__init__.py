"""Directory sources (the YAML file, Microsoft Graph, LDAP) and the factory that picks one.

The interface they implement (`Directory`, `Person`) is in the core: `handlers/directory.py`.
"""
