"""The only code that formats output: terminal tables (``render``) and HTML pages (``pages``)."""
