"""The planners' web app (``flowsim app``): Streamlit pages over the public API and the report's presentation layer.

``main.py`` is the Streamlit script; ``session`` runs and compares (no Streamlit there, so it is tested without a
browser), ``views`` builds the tables it shows with the report's code, ``downloads`` makes what it offers to
download with the code the command line uses, and ``server`` starts Streamlit for ``flowsim app``.  Nothing in
the domain or ``report/`` imports this package.
"""
