"""Register a model version: checks the checkpoint (or server) and loads it once, so a bad one fails now."""
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ai import services
from core.errors import ServiceError


class Command(BaseCommand):
    help = "Register a Janus checkpoint folder (--path) or an OpenAI-compatible server (--url) as a model version."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--backend", choices=["janus", "http"], default="janus")
        parser.add_argument("--path", default="", help="Checkpoint folder in the transformers layout (janus).")
        parser.add_argument("--url", default="", help="Server base URL, e.g. http://gpu-1:8000/v1 (http).")
        parser.add_argument("--server-model", default="", help="Model name the server expects (http).")
        parser.add_argument("--api-key-env", default="", help="Environment variable holding the server's API key.")
        parser.add_argument("--roles", choices=["transformers", "authors"], default="transformers",
                            help="<|User|>/<|Assistant|> (transformers template) "
                                 "or User/Assistant (the authors' script).")
        parser.add_argument("--include-history", action="store_true", help="Put the clinical history into the prompt.")
        parser.add_argument("--max-new-tokens", type=int, default=512)
        parser.add_argument("--generation", default="{}", help="Further generation settings as JSON.")
        parser.add_argument("--description", default="")
        parser.add_argument("--demo", action="store_true", help="A demo model: never for clinical use.")
        parser.add_argument("--skip-check", action="store_true", help="Do not load the model / call the server now.")
        parser.add_argument("--as", dest="username", default="", help="Who registers it (for the audit log).")

    def handle(self, *args, **o):
        try:
            generation = json.loads(o["generation"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--generation is not valid JSON: {exc}") from exc
        roles = {"transformers": ("<|User|>", "<|Assistant|>"), "authors": ("User", "Assistant")}[o["roles"]]
        generation = {"user_role": roles[0], "assistant_role": roles[1], "include_history": o["include_history"],
                      "max_new_tokens": o["max_new_tokens"], **generation}
        user = get_user_model().objects.filter(username=o["username"]).first() if o["username"] else None
        self.stdout.write(f"Checking {o['path'] or o['url']} …")
        try:
            version = services.register_model(
                by=user, name=o["name"], backend=o["backend"], path=o["path"], url=o["url"],
                server_model=o["server_model"], api_key_env=o["api_key_env"], generation=generation,
                description=o["description"], is_demo=o["demo"], check=not o["skip_check"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Registered {version.name} ({version.backend}; {version.n_parameters or '?'} parameters; "
            f"weights sha256 {version.weights_sha256[:16] or '-'}…)."
        ))
