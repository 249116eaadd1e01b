"""Import this module on workers (``dramatiq yourapp cachewire_dramatiq.actors``) to declare
cachewire's actors on the global broker, named and queued as the ``dramatiq`` settings say.

Import it after the module that sets the broker and configures cachewire.
"""

from __future__ import annotations

from cachewire_dramatiq._register import register_actor

run_rules = register_actor()

__all__ = ["run_rules"]
