#include "proxy/merge.hpp"
