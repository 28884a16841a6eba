/*
 * The sandbox launcher in C: the same job as sandbox_launcher.py, without
 * starting an interpreter for every command. stockade compiles it on the fly
 * (once per process, into a private folder) when a C compiler is there, and
 * falls back to the Python launcher otherwise.
 *
 * Usage: launcher CONFIG -- PROGRAM [ARGS...]
 *
 * CONFIG is lines of "key value", the value percent-encoded (%XX):
 *   status_fd N        report "ok landlock=N" or "error MESSAGE" here (closed on exec)
 *   cgroup_fd N        write "0" to join the run's pids cgroup, then close
 *   rlimit R SOFT HARD setrlimit(R, {SOFT, HARD})
 *   landlock 1         apply Landlock (when the kernel has it)
 *   path ACCESS PATH   allow ACCESS (ro, rw, dev) beneath PATH
 *   connect PORT       allow TCP connect to PORT
 *   env NAME=VALUE     the command's environment (nothing else is passed)
 *   relay PORT PATH    (network proxy) before anything else, start a detached
 *                      relay listening on 127.0.0.1:PORT that carries each
 *                      connection to the Unix socket PATH; it confines itself
 *                      with Landlock to nothing at all
 *
 * Any failure before execve is reported and the launcher exits 126: the
 * command never runs half-confined.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ITEMS 512

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_TRUNCATE (1ULL << 14)
#define FS_IOCTL_DEV (1ULL << 15)
#define NET_BIND_TCP (1ULL << 0)
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)
#define FILE_RIGHTS (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV)

struct path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct net_port {
    uint64_t allowed_access;
    uint64_t port;
};

static int status_fd = -1;

static void report(const char *kind, const char *message) {
    if (status_fd >= 0) {
        dprintf(status_fd, "%s %s\n", kind, message);
    }
}

static int fail(const char *what) {
    char reason[128], buf[512];
    snprintf(reason, sizeof reason, "%s", strerror(errno));
    for (char *p = reason; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    }
    snprintf(buf, sizeof buf, "%s: %s", what, reason);
    report("error", buf);
    fprintf(stderr, "stockade launcher: %s\n", buf);
    return 126;
}

static void decode(char *s) {
    char *out = s;
    for (char *in = s; *in; in++) {
        if (in[0] == '%' && in[1] && in[2]) {
            char hex[3] = {in[1], in[2], 0};
            *out++ = (char)strtol(hex, NULL, 16);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = 0;
}

static uint64_t fs_mask(long abi) {
    if (abi >= 5) return (1ULL << 16) - 1;
    if (abi >= 3) return (1ULL << 15) - 1;
    if (abi >= 2) return (1ULL << 14) - 1;
    return (1ULL << 13) - 1;
}

static uint64_t access_of(const char *name) {
    if (strcmp(name, "ro") == 0) return FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
    if (strcmp(name, "dev") == 0) return FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR;
    if (strcmp(name, "rw") == 0) return (1ULL << 16) - 1;
    return 0; /* unknown: nothing */
}

/* Restrict the calling process; return the ABI applied (0: the kernel has
 * none), or -1 after reporting a failure. */
static long apply_landlock(const char **paths, const char **accesses, int npaths,
                           const long *ports, int nports) {
    long abi = syscall(444, NULL, 0, 1);
    if (abi <= 0) return 0;
    uint64_t fs = fs_mask(abi);
    uint64_t attr[3] = {fs, abi >= 4 ? (NET_BIND_TCP | NET_CONNECT_TCP) : 0,
                        abi >= 6 ? (SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL) : 0};
    size_t size = abi >= 6 ? 24 : (abi >= 4 ? 16 : 8);
    int ruleset = (int)syscall(444, attr, size, 0);
    if (ruleset < 0) return fail("landlock_create_ruleset failed"), -1;
    for (int i = 0; i < npaths; i++) {
        int fd = open(paths[i], O_PATH | O_CLOEXEC);
        if (fd < 0) continue; /* not in this sandbox: nothing to allow */
        struct stat st;
        uint64_t rights = access_of(accesses[i]) & fs;
        if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) rights &= FILE_RIGHTS;
        struct path_beneath rule = {rights, fd};
        if (syscall(445, ruleset, 1, &rule, 0) < 0) {
            char what[300];
            snprintf(what, sizeof what, "landlock rule for %s failed", paths[i]);
            return fail(what), -1;
        }
        close(fd);
    }
    if (abi >= 4) {
        for (int i = 0; i < nports; i++) {
            struct net_port rule = {NET_CONNECT_TCP, (uint64_t)ports[i]};
            if (syscall(445, ruleset, 2, &rule, 0) < 0) return fail("landlock port rule failed"), -1;
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail("prctl(no_new_privs) failed"), -1;
    if (syscall(446, ruleset, 0) < 0) return fail("landlock_restrict_self failed"), -1;
    close(ruleset);
    return abi;
}

static int write_all(int fd, const char *buf, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        n -= w;
    }
    return 0;
}

/* Carry one connection to the Unix socket and back until either side ends. */
static void pump(int client, const char *path) {
    int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (upstream < 0 || strlen(path) >= sizeof addr.sun_path) return;
    strcpy(addr.sun_path, path);
    if (connect(upstream, (struct sockaddr *)&addr, sizeof addr) < 0) return;
    struct pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    static char buf[65536];
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0 || write_all(fds[1 - i].fd, buf, n) < 0) return;
        }
    }
}

/* Start the relay in a detached grandchild (reparented to the sandbox's init,
 * so the command never waits for it); one process per connection. */
static int start_relay(int port, const char *path) {
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (server < 0) return fail("relay socket failed");
    int one = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(server, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("relay bind failed");
    if (listen(server, 64) < 0) return fail("relay listen failed");
    pid_t pid = fork();
    if (pid < 0) return fail("relay fork failed");
    if (pid > 0) {
        close(server);
        waitpid(pid, NULL, 0);
        return 0;
    }
    if (fork() != 0) _exit(0);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++) dup2(devnull, fd);
    if (status_fd >= 0) close(status_fd);
    status_fd = -1;
    if (apply_landlock(NULL, NULL, 0, NULL, 0) < 0) _exit(1);
    signal(SIGCHLD, SIG_IGN); /* connection processes are reaped by the kernel */
    for (;;) {
        int client = accept4(server, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            _exit(0);
        }
        pid_t child = fork();
        if (child == 0) {
            close(server);
            pump(client, path);
            _exit(0);
        }
        close(client);
    }
}

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "stockade launcher: usage: launcher CONFIG -- PROGRAM [ARGS...]\n");
        return 126;
    }
    static char *env[MAX_ITEMS + 1];
    static char *paths[MAX_ITEMS];
    static const char *accesses[MAX_ITEMS];
    static long ports[MAX_ITEMS];
    int nenv = 0, npaths = 0, nports = 0, landlock = 0, cgroup_fd = -1, relay_port = 0;
    const char *relay_path = NULL;
    struct { int res; rlim_t soft, hard; } limits[16];
    int nlimits = 0;

    char *config = strdup(argv[1]);
    if (!config) return 126;
    for (char *line = strtok(config, "\n"); line; line = strtok(NULL, "\n")) {
        char *value = strchr(line, ' ');
        if (!value) continue;
        *value++ = 0;
        if (strcmp(line, "status_fd") == 0) {
            status_fd = atoi(value);
        } else if (strcmp(line, "cgroup_fd") == 0) {
            cgroup_fd = atoi(value);
        } else if (strcmp(line, "rlimit") == 0 && nlimits < 16) {
            unsigned long long soft, hard;
            int res;
            if (sscanf(value, "%d %llu %llu", &res, &soft, &hard) == 3) {
                limits[nlimits].res = res;
                limits[nlimits].soft = (rlim_t)soft;
                limits[nlimits].hard = (rlim_t)hard;
                nlimits++;
            }
        } else if (strcmp(line, "landlock") == 0) {
            landlock = atoi(value);
        } else if (strcmp(line, "path") == 0 && npaths < MAX_ITEMS) {
            char *path = strchr(value, ' ');
            if (!path) continue;
            *path++ = 0;
            decode(path);
            accesses[npaths] = value;
            paths[npaths++] = path;
        } else if (strcmp(line, "connect") == 0 && nports < MAX_ITEMS) {
            ports[nports++] = atol(value);
        } else if (strcmp(line, "relay") == 0) {
            char *path = strchr(value, ' ');
            if (!path) continue;
            *path++ = 0;
            decode(path);
            relay_port = atoi(value);
            relay_path = path;
        } else if (strcmp(line, "env") == 0 && nenv < MAX_ITEMS) {
            decode(value);
            env[nenv++] = value;
        }
    }
    env[nenv] = NULL;

    if (status_fd >= 0 && fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0) return fail("status fd");
    if (cgroup_fd >= 0) {
        if (write(cgroup_fd, "0", 1) != 1) return fail("cannot join the pids cgroup");
        close(cgroup_fd);
    }
    for (int i = 0; i < nlimits; i++) {
        struct rlimit rl = {limits[i].soft, limits[i].hard};
        if (setrlimit(limits[i].res, &rl) < 0) return fail("cannot set a resource limit");
    }
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    if (relay_port > 0 && relay_path != NULL && start_relay(relay_port, relay_path) != 0) {
        return 126;
    }

    long abi = 0;
    if (landlock) {
        abi = apply_landlock((const char **)paths, accesses, npaths, ports, nports);
        if (abi < 0) return 126;
    }
    char ok[64];
    snprintf(ok, sizeof ok, "landlock=%ld", abi);
    report("ok", ok);
    execve(argv[3], argv + 3, env);
    char what[300];
    snprintf(what, sizeof what, "cannot start `%s`", argv[3]);
    return fail(what);
}
