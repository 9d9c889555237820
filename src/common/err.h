/*
 * Error codes shared by every rtsync module. The table lives in the public
 * header include/rtsync/err.h so librtsync's users see the same codes.
 *
 * Ownership: the strings returned are static.
 * Threads:   every function is thread-safe.
 * Limits:    codes are only ever appended to the table, never renumbered.
 */
#ifndef RT_COMMON_ERR_H
#define RT_COMMON_ERR_H

#include "rtsync/err.h"

#endif
