"""``vaekit pretrained``: the models shipped with vaekit, and their model cards."""

from __future__ import annotations

import argparse
import json


def register(commands) -> None:
    """Add ``pretrained`` to the CLI's sub-parsers."""
    parser = commands.add_parser(
        "pretrained",
        help="list the shipped pretrained models, or show one's model card",
        description="Without NAME, list the models shipped inside vaekit. With NAME, print its model card: "
                    "the command that trained it, its test scores and the machine. Every command that takes "
                    "a run directory also takes these names (e.g. 'vaekit report fashion28-beta1').",
    )
    parser.add_argument("name", nargs="?", default=None, help="a pretrained model (default: list them all)")
    parser.add_argument("--json", action="store_true", help="print the card(s) as JSON")
    parser.set_defaults(func=cmd_pretrained)


def cmd_pretrained(args: argparse.Namespace) -> int:
    from vaekit.zoo import model_card, model_cards

    if args.name is not None:
        card = model_card(args.name)
        print(json.dumps(card.to_dict(), indent=2) if args.json else card.to_text())
        return 0
    cards = model_cards()
    if args.json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return 0
    if not cards:
        print("no pretrained models are installed")
        return 0
    width = max(len(card.name) for card in cards)
    print(f"{'name':<{width}}  {'arch':<9} {'latent':>6} {'beta':>5} {'epochs':>6} {'test -ELBO':>10}  summary")
    for card in cards:
        print(f"{card.name:<{width}}  {card.arch:<9} {card.latent_dim:>6} {card.beta:>5g} {card.epochs:>6} "
              f"{card.test_elbo:>10.2f}  {card.summary}")
    print("\n'vaekit pretrained NAME' shows a model card; use NAME wherever a command takes a run directory.")
    return 0
