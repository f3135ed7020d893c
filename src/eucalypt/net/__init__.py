"""eucalypt.net: host networking as desired state (shared; imports no component).

- :mod:`runner`: the one command runner every host change goes through.
- :mod:`links`, :mod:`iptables`, :mod:`state`: bridges, VXLAN, addresses and
  our iptables chains as data; render, diff, apply atomically, tear down.
- :mod:`dnsmasq`: DHCP with fixed leases per interface.
- :mod:`node`: a node's side of an instance network (bridge + VXLAN).
- :mod:`netns`: network namespaces, veth pairs, sockets inside a namespace.
"""

from eucalypt.net.runner import CommandError, CommandResult, CommandRunner, RecordingRunner, Runner

__all__ = ["CommandError", "CommandResult", "CommandRunner", "RecordingRunner", "Runner"]
