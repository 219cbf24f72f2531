"""
The flow editor: create, edit, delete and revert flow specs from the BYO Flows page.

See docs/flow-editor.md for the design and the API contract. The routers live in
:mod:`~airflow_byo.plugins.editor.routes` (the JSON API) and
:mod:`~airflow_byo.plugins.editor.pages` (the HTML pages).
"""
