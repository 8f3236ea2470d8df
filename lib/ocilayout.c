/* soci-nbd: ocilayout (being written). */
#include <config.h>
