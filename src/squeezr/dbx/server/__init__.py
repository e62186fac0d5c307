"""``dbx serve``: experiments over HTTP, stored in a database (PostgreSQL or SQLite) with
attachments in content-addressed storage. Needs the ``server`` extra (FastAPI, uvicorn,
psycopg); nothing here is imported by ``squeezr.dbx`` itself. See docs/dbx-server.md.

Layout: ``app.py`` wires the pieces; ``settings.py`` says where data lives; ``storage/`` keeps
the data (one module per database, ``blobs.py`` for attachment bytes); ``auth.py`` checks
tokens; ``routes/`` holds one module per resource; ``limits.py`` caps request sizes.
"""
