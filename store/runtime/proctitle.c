/*
 * Process titles, the way nginx and PostgreSQL do them on Linux: the kernel
 * shows /proc/PID/cmdline from the memory that held the argv strings at
 * exec, and the environ strings lie right after it.  Moving environ to the
 * heap frees that whole area for a title longer than the command line was.
 */
#include <sys/prctl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/runtime/runtime.h"

extern char **environ;

/* The area proctitle_set writes; empty until proctitle_init. */
struct proctitle {
	char	*pt_start;	/* argv[0] */
	size_t	 pt_argsize;	/* the argv strings: the kernel's arg_end */
	size_t	 pt_size;	/* argv strings plus the environ strings */
};

static struct proctitle pt;

/*
 * Copy environ to the heap and return the end of the environ strings
 * that follow end contiguously.  On failure environ stays where it was
 * and end is returned unchanged: the title then fits in argv alone.
 */
static char *
proctitle_move_environ(char *end)
{
	char	**env, *last = end;
	size_t	  n, i;

	for (n = 0; environ[n] != NULL; n++)
		if (environ[n] == last)
			last = environ[n] + strlen(environ[n]) + 1;
	if ((env = calloc(n + 1, sizeof(*env))) == NULL)
		return end;
	for (i = 0; i < n; i++)
		if ((env[i] = strdup(environ[i])) == NULL)
			goto fail;
	environ = env;
	return last;
fail:
	while (i-- > 0)
		free(env[i]);
	free(env);
	return end;
}

void
proctitle_init(int argc, char **argv)
{
	char	*end, *name, *slash;
	int	 i;

	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return;
	end = argv[0];
	for (i = 0; i < argc && argv[i] == end; i++)
		end = argv[i] + strlen(argv[i]) + 1;
	pt.pt_start = argv[0];
	pt.pt_argsize = (size_t)(end - argv[0]);
	/* err(3) and getopt print this name, which lives in argv[0]. */
	if ((name = strdup(argv[0])) != NULL) {
		program_invocation_name = name;
		slash = strrchr(name, '/');
		program_invocation_short_name = slash ? slash + 1 : name;
	}
	pt.pt_size = (size_t)(proctitle_move_environ(end) - argv[0]);
}

void
proctitle_set(const char *title)
{
	char	 comm[16];
	size_t	 len = strlen(title);

	snprintf(comm, sizeof(comm), "%s", title);
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (pt.pt_start == NULL || pt.pt_size == 0)
		return;
	if (len >= pt.pt_size)
		len = pt.pt_size - 1;
	memcpy(pt.pt_start, title, len);
	memset(pt.pt_start + len, 0, pt.pt_size - len);
	/*
	 * The kernel returns the whole argv area, NUL padding included,
	 * unless the area's last byte is not a NUL: then it takes the
	 * program to have set a title and returns up to the first NUL.
	 * That byte lies after the title's NUL, so it is never shown.
	 */
	if (len + 1 < pt.pt_argsize)
		pt.pt_start[pt.pt_argsize - 1] = ' ';
}
