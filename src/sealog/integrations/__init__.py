"""Integrations: web middleware, Django, SQLAlchemy and logging.

Nothing is imported here, so ``import sealog`` never pulls in a framework: each
integration module imports its own framework when it is used.
"""
