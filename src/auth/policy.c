/* Placeholder: the policy module is being written (src/auth/policy.h). */
#include "auth/policy.h"

#include <stdlib.h>

#include "common/alloc.h"

struct rt_policies {
	unsigned refs;
};

struct rt_policies *rt_policies_new(void)
{
	struct rt_policies *p = rt_xcalloc(1, sizeof *p);
	p->refs = 1;
	return p;
}

struct rt_policies *rt_policies_ref(struct rt_policies *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void rt_policies_unref(struct rt_policies *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(p);
}
