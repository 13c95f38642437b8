from oracle.cli import app

app()
