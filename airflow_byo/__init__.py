"""airflow-byo: run your own Python function on every new file, exactly once, in its own virtualenv."""

# Keep this module free of imports: the child runtime ships ``airflow_byo/runtime`` into
# virtualenvs that have no Airflow, and Python imports this file first.
__version__ = "0.1.0"
