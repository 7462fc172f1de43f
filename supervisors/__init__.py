"""The supervision trees (shadow, live) and the OS service units (systemd, launchd).

``supervisors.shadow`` and ``supervisors.live`` each build one tree; they share
everything up to risk (``_tree``) and differ only in the end of the line. The
live module is the only importer of ``aether.submit``.
"""

from ._supervise import ActorSpec, RestartPolicy, Supervisor, SupervisorGaveUp

__all__ = ["ActorSpec", "RestartPolicy", "Supervisor", "SupervisorGaveUp"]
