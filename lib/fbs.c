/* soci-nbd: fbs (being written). */
#include <config.h>
