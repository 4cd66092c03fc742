from archlab.cli import app

app()
