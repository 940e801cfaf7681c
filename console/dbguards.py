"""Rules PostgreSQL holds itself (SPEC T4): the triggers that migrations install run through this."""


def on_postgresql(sql):
    """A migration step that runs `sql` on PostgreSQL and does nothing elsewhere (SQLite keeps the app's rule)."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)  # no parameters: the % of RAISE are PL/pgSQL's, not placeholders

    return run
