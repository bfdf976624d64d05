"""The stand-in store as a Django + Django REST Framework project.

Settings come from the STORE_* environment variables that sandbox/store.py
sets from its flags before Django starts, so each store process has its own.
"""
