// soci-nbd-snapshotter rpull (rpull.cc): the subcommand's main; argv[0] is
// "rpull".  Returns the exit status (0, 1 on failure, 2 on usage errors).
#ifndef SN_RPULL_H
#define SN_RPULL_H

int rpull_main(int argc, char **argv);

#endif
