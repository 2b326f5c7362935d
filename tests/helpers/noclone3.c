/* noclone3 PROGRAM [ARGS...]: runs PROGRAM where clone3 answers ENOSYS, as
 * on kernels before 5.3, to test jailrun's fallback to clone. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
        if (argc < 2) {
                fprintf(stderr, "usage: noclone3 PROGRAM [ARGS...]\n");
                return 2;
        }
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0 ||
            seccomp_load(ctx) < 0) {
                fprintf(stderr, "noclone3: cannot install the filter\n");
                return 1;
        }
        seccomp_release(ctx);
        execvp(argv[1], argv + 1);
        perror("noclone3: exec");
        return 127;
}
