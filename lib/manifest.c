/* soci-nbd: manifest (being written). */
#include <config.h>
