/*
 * Time sources: monotonic milliseconds and nanoseconds for timers and latency,
 * wall-clock seconds and milliseconds for tokens and timestamps.
 *
 * Ownership: none.  Threads: thread-safe.  Limits: none.
 */
#ifndef RT_COMMON_CLOCK_H
#define RT_COMMON_CLOCK_H

#include <stdint.h>

uint64_t rt_mono_ms(void);
uint64_t rt_mono_ns(void);
int64_t rt_wall_ms(void);
int64_t rt_wall_s(void);

#endif
