#!/bin/sh
# busybox udhcpc event script (installed as /etc/udhcpc.script, passed with -s).
# udhcpc calls it with $1 = deconfig|bound|renew|leasefail|nak and the lease in the
# environment: $interface $ip $mask (prefix length) $broadcast $router $dns $domain $mtu.

STATE=/run/eucalypt

case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        rm -f "$STATE/ip"
        ;;
    bound|renew)
        if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/"; then
            ip -4 addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        fi
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        if [ -n "$router" ]; then
            while ip route del default dev "$interface" 2>/dev/null; do :; done
            for r in $router; do
                ip route add default via "$r" dev "$interface" && break
            done
        fi
        : >/etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
        for ns in $dns; do echo "nameserver $ns" >>/etc/resolv.conf; done
        mkdir -p "$STATE"
        echo "$ip" >"$STATE/ip"
        ;;
    leasefail|nak)
        echo "udhcpc: $1 on $interface" >&2
        ;;
esac
exit 0
