"""The end-user self-service portal: server-rendered pages under /portal/{slug}/ (routes.py), its
cookies and CSRF (security.py), presentation helpers (render.py), templates and one stylesheet."""
