/* soci-nbd: tarzinfo (being written). */
#include <config.h>
