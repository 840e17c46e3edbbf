from workers.local.cli import services_app

services_app(prog_name="python -m workers.local")
