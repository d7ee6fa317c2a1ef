"""Hooks into other libraries' training loops; each module imports its library, so import the one you use:

    from metabench.integrations.transformers import MetabenchCallback
"""
