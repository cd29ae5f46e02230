/*
 * keyfile.c: reads the shared key of the members (--keyFile) as mongod
 * reads its keyFile: the file must give no permission to group or others
 * (mongod's "permissions on <path> are too open"); whitespace anywhere is
 * ignored; what remains must be 6 to 1024 base64 characters
 * ([A-Za-z0-9+/=]), and those characters themselves (not their decoded
 * bytes) are the key, so a key file that works for a mongod replica set
 * works here and the other way round.
 *
 * Unlike mongod the key does not (yet) switch on client authentication:
 * it only authenticates members to one another (transport.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/sha256.h"
#include "repl/repl.h"

/* Larger files are refused before they are read: 1024 key characters
 * leave room for a lot of whitespace. */
#define KEYFILE_MAX_BYTES ((size_t)64 << 10)

static bool is_key_space(unsigned char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static bool is_key_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/' || ch == '=';
}

int repl_key_parse(const char *text,
                   size_t n,
                   const char *path,
                   struct repl_key *out,
                   struct cairn_error *err)
{
    size_t len = 0;
    int rv;

    out->len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (is_key_space(ch)) {
            continue;
        }
        if (!is_key_char(ch)) {
            rv = cairn_error_setf(err, CAIRN_EINVAL, "invalid char in key file %s", path);
            goto err;
        }
        if (len < REPL_KEY_MAX) {
            out->data[len] = (char)ch;
        }
        len++; /* past REPL_KEY_MAX: counted for the message, not stored */
    }
    if (len < REPL_KEY_MIN || len > REPL_KEY_MAX) {
        rv = cairn_error_setf(err, CAIRN_EINVAL,
                              "security key in %s has length %zu, must be between %d and %d chars",
                              path, len, REPL_KEY_MIN, REPL_KEY_MAX);
        goto err;
    }
    out->len = len;
    return 0;

err:
    repl_key_clear(out);
    return rv;
}

int repl_keyfile_load(const char *path, struct repl_key *out, struct cairn_error *err)
{
    char buf[KEYFILE_MAX_BYTES];
    struct stat st;
    size_t n = 0;
    int fd, rv;

    out->len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "error opening file: %s: %s", path,
                              strerror(errno));
        goto err;
    }
    /* fstat on the opened file: what is checked is what is read. */
    if (fstat(fd, &st) != 0) {
        rv =
            cairn_error_setf(err, CAIRN_EINVAL, "error reading file %s: %s", path, strerror(errno));
        goto err_after_open;
    }
    if (!S_ISREG(st.st_mode)) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "key file %s is not a regular file", path);
        goto err_after_open;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "permissions on %s are too open", path);
        goto err_after_open;
    }
    if ((size_t)st.st_size > sizeof buf) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "key file %s is larger than %zu bytes", path,
                              sizeof buf);
        goto err_after_open;
    }
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof buf - n);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            rv = cairn_error_setf(err, CAIRN_EINVAL, "error reading file %s: %s", path,
                                  strerror(errno));
            goto err_after_read;
        }
        if (got == 0) {
            break;
        }
        n += (size_t)got;
        if (n == sizeof buf) {
            rv = cairn_error_setf(err, CAIRN_EINVAL, "key file %s is larger than %zu bytes", path,
                                  sizeof buf);
            goto err_after_read;
        }
    }
    rv = repl_key_parse(buf, n, path, out, err);
    if (rv != 0) {
        goto err_after_read;
    }
    cairn_wipe(buf, n);
    close(fd);
    return 0;

err_after_read:
    cairn_wipe(buf, n);
err_after_open:
    close(fd);
err:
    out->len = 0;
    return rv;
}

void repl_key_clear(struct repl_key *key)
{
    if (key != NULL) {
        cairn_wipe(key, sizeof *key);
    }
}
