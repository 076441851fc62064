/* LD_PRELOAD shim that lets eight uftpd receivers (and the uftp sender) run
 * on one host over loopback multicast, for bench/fleet.sh only.
 *
 * uftpd 4.10 cannot do that as shipped, for two reasons:
 *  - it binds its UDP port without SO_REUSEADDR, so a second uftpd on the
 *    same port (the sender sends to one port) fails with "Address already in
 *    use". With SO_REUSEADDR every socket bound to the port gets its own copy
 *    of each multicast datagram (Linux), and the sender only ever sends to
 *    the multicast groups; receivers answer it by unicast.
 *  - it only joins groups on interfaces whose flags say IFF_MULTICAST, and
 *    `lo` does not carry that flag here; `-I 127.0.0.1` is then silently
 *    ignored and nothing is received. The kernel accepts the join on lo
 *    anyway (haifu's multicast plugin does the same join), so the shim
 *    reports lo as multicast-capable to getifaddrs() callers instead of
 *    changing the interface's flags for the whole machine.
 *
 * Nothing else is changed: the data path is uftp's own.
 *
 *   cc -O2 -shared -fPIC -o uftp_shim.so bench/uftp_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    return real(fd, addr, len);
}

int getifaddrs(struct ifaddrs **out) {
    static int (*real)(struct ifaddrs **);
    if (!real)
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(out);
    if (rc == 0)
        for (struct ifaddrs *i = *out; i; i = i->ifa_next)
            if (i->ifa_flags & IFF_LOOPBACK)
                i->ifa_flags |= IFF_MULTICAST;
    return rc;
}
