"""Tables, engine and session factory, migrations, queries and the organisation loader."""
