"""The web console at /ui/: server-rendered pages (jinja2, autoescaped) for technicians, rule
authors and admins, signed in with an API token, over the same services as the JSON API."""
