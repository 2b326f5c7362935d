/* What a failed SQLite call stands for, as an errno, for the stores that
 * keep their data in SQLite (the broker's state, jaild's registry): their
 * callers answer a full disk differently from a locked file or a broken
 * one. Header only: it needs sqlite3.h, which the rest of common/ does not. */
#ifndef JR_SQLERR_H
#define JR_SQLERR_H

#include <errno.h>
#include <sqlite3.h>

/* The connection's last error as a positive errno. A full disk is
 * SQLITE_FULL when a write came short (SQLite then keeps no errno; the
 * page limit, its other cause, is never set by our stores) or the errno of
 * the failed I/O (ENOSPC growing the -shm index, EDQUOT, which SQLite
 * calls a disk I/O error): sqlite3_system_errno is asked only for I/O
 * codes, where it belongs to this failure and not an earlier one. */
static inline int jr_sqlite_errnum(sqlite3 *db)
{
        int code = sqlite3_extended_errcode(db) & 0xff;
        int sys = code == SQLITE_IOERR || code == SQLITE_CANTOPEN ? sqlite3_system_errno(db) : 0;
        if (code == SQLITE_FULL || sys == ENOSPC)
                return ENOSPC;
        if (sys == EDQUOT)
                return EDQUOT;
        switch (code) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return EBUSY;
        case SQLITE_READONLY:
        case SQLITE_PERM: return EACCES;
        case SQLITE_CANTOPEN: return sys ? sys : ENOENT;
        case SQLITE_NOMEM: return ENOMEM;
        default: return EIO;
        }
}

#endif
