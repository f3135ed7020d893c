#!/bin/sh
# eucalypt test-guest /sbin/init (busybox ash, PID 1 after the initramfs switch_root).
#
# Boot sequence:
#   1. mount proc/sys/dev/devpts/run, set a provisional hostname;
#   2. bring up lo, then DHCP on the first ethernet interface with busybox udhcpc
#      (up to ~20 s; the lease is applied by /etc/udhcpc.script);
#   3. read the EC2 instance metadata service at http://169.254.169.254:
#        meta-data/instance-id                   -> hostname
#        meta-data/public-keys/0/openssh-key     -> /root/.ssh/authorized_keys (0600)
#        user-data                               -> /run/user-data; if it starts with
#                                                   "#!" it is made executable and run,
#                                                   synchronously, its output copied to
#                                                   the console prefixed "user-data: "
#      IMDSv2 is tried first: busybox wget cannot send PUT, so the token request
#      (PUT /latest/api/token) is written as raw HTTP/1.0 through busybox nc -e. If that
#      yields no token (service is v1-only, or the PUT failed) plain v1 GETs are used.
#   4. start dropbear on port 22 (public-key logins only; root allowed; host keys
#      are made at boot: ed25519 up front, the others on demand with -R) and wait
#      until it listens;
#   5. print exactly one line
#        EUCALYPT-GUEST-READY instance-id=<id> ip=<addr>
#      on the serial console, then hand PID 1 to busybox init (reaps orphans, keeps
#      a getty on ttyS0, handles poweroff/reboot).
#
# Any failure in steps 2-3 is reported on the console and boot carries on, so the
# READY line always appears (with instance-id=unknown / ip=none if need be).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
umask 022

[ -c /dev/null ] || mount -t devtmpfs -o nosuid devtmpfs /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
mkdir -p /run/eucalypt
exec </dev/console >/dev/console 2>&1

log() { echo "eucalypt-init: $*"; }

# The image may have been built by a non-root user: ssh-relevant paths must be root's.
chown -R 0:0 /root /etc 2>/dev/null
chmod 700 /root
chmod 600 /etc/shadow

hostname -F /etc/hostname 2>/dev/null || hostname eucalypt-guest
ip link set lo up

# ---------------------------------------------------------------- network (DHCP)
IFACE=
for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    [ -e "$dev/device" ] || continue
    IFACE=$name
    break
done

IP=none
if [ -z "$IFACE" ]; then
    log "no network interface found"
else
    ip link set "$IFACE" up
    # -t 20 -T 1: up to 20 DISCOVERs one second apart; -n: give up after that.
    # After a lease, udhcpc forks into the background and keeps renewing it.
    if udhcpc -i "$IFACE" -s /etc/udhcpc.script -t 20 -T 1 -n -p /run/udhcpc.pid \
        -x hostname:"$(hostname)" >/run/eucalypt/udhcpc.log 2>&1; then
        IP=$(cat /run/eucalypt/ip 2>/dev/null || echo none)
        log "$IFACE is $IP"
    else
        log "DHCP on $IFACE failed:"
        cat /run/eucalypt/udhcpc.log
    fi
fi

# ---------------------------------------------------------------- metadata service
MD_HOST=169.254.169.254
MD=http://$MD_HOST
TOKEN=

# IMDSv2 token, via raw HTTP over busybox nc (busybox wget has no PUT). The request is
# written by nc's -e child, which then reads the answer: piping the request into nc
# would half-close the socket at the end of input, and servers that take EOF as the
# client going away (uvicorn does) drop the request unanswered.
imds_token() {
    rm -f /run/eucalypt/token.http
    req='PUT /latest/api/token HTTP/1.0\r\nHost: '"$MD_HOST"'\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n'
    timeout 5 nc "$MD_HOST" 80 -e /bin/sh -c "printf '$req'; timeout 5 cat >/run/eucalypt/token.http" \
        >/dev/null 2>&1
    resp=$(tr -d '\r' </run/eucalypt/token.http 2>/dev/null)
    case "$resp" in
        "HTTP/1."?" 200"*) printf '%s\n' "$resp" | sed '1,/^$/d' | head -n 1 ;;
    esac
}

# md_get PATH OUTFILE -- GET $MD/PATH (with the v2 token when we have one).
md_get() {
    if [ -n "$TOKEN" ]; then
        timeout 10 wget -q -O "$2" --header "X-aws-ec2-metadata-token: $TOKEN" "$MD/$1"
    else
        timeout 10 wget -q -O "$2" "$MD/$1"
    fi
}

IID=unknown
if [ "$IP" != none ]; then
    # The service may take a moment to answer: retry the first request for ~10 s.
    i=0
    while :; do
        TOKEN=$(imds_token)
        if md_get latest/meta-data/instance-id /run/eucalypt/instance-id; then
            break
        fi
        TOKEN=
        if md_get latest/meta-data/instance-id /run/eucalypt/instance-id; then
            break
        fi
        i=$((i + 1))
        if [ "$i" -ge 10 ]; then
            log "metadata service $MD did not answer"
            break
        fi
        sleep 1
    done
    if [ -s /run/eucalypt/instance-id ]; then
        IID=$(head -n 1 /run/eucalypt/instance-id)
        if [ -n "$TOKEN" ]; then log "metadata: IMDSv2"; else log "metadata: IMDSv1"; fi
        hostname "$IID"
        echo "$IID" >/etc/hostname
    fi

    if md_get latest/meta-data/public-keys/0/openssh-key /run/eucalypt/openssh-key \
        && [ -s /run/eucalypt/openssh-key ]; then
        mkdir -p /root/.ssh
        chmod 700 /root/.ssh
        cat /run/eucalypt/openssh-key >/root/.ssh/authorized_keys
        chmod 600 /root/.ssh/authorized_keys
        log "installed ssh public key for root"
    fi

    if md_get latest/user-data /run/user-data && [ -s /run/user-data ]; then
        if [ "$(head -c 2 /run/user-data)" = "#!" ]; then
            chmod 700 /run/user-data
            log "running user-data script"
            { (cd / && /run/user-data); echo "$?" >/run/eucalypt/user-data.rc; } 2>&1 \
                | tee /var/log/user-data.log | sed 's/^/user-data: /'
            log "user-data exited with status $(cat /run/eucalypt/user-data.rc)"
        else
            chmod 600 /run/user-data
            log "saved user-data to /run/user-data"
        fi
    else
        rm -f /run/user-data
    fi
fi

# ---------------------------------------------------------------- ssh (dropbear)
mkdir -p /etc/dropbear /var/log
KEY=/etc/dropbear/dropbear_ed25519_host_key
[ -s "$KEY" ] || dropbearkey -t ed25519 -f "$KEY" >/dev/null 2>&1
dropbearkey -y -f "$KEY" 2>/dev/null | sed -n 's/^Fingerprint: /eucalypt-init: ssh host key ed25519 /p'
# -R: make any other host key type on first use; -s: no password logins at all;
# -F -E: stay in the foreground and log to stderr (we background it ourselves).
dropbear -R -s -F -E -p 22 >/var/log/dropbear.log 2>&1 &
# Announce readiness only once sshd accepts connections (up to ~5 s).
i=0
while ! netstat -ltn 2>/dev/null | grep -q ':22 '; do
    i=$((i + 1))
    if [ "$i" -gt 50 ]; then
        log "dropbear is not listening on port 22:"
        cat /var/log/dropbear.log
        break
    fi
    sleep 0.1
done

# ---------------------------------------------------------------- ready
READY="EUCALYPT-GUEST-READY instance-id=$IID ip=$IP"
if [ -c /dev/ttyS0 ]; then echo "$READY" >/dev/ttyS0; else echo "$READY"; fi

# busybox init (configured by /etc/inittab) takes over PID 1.
exec /bin/busybox init
