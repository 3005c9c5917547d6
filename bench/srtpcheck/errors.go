package srtpcheck

import "errors"

// ErrBadKey means an a=crypto line or inline key could not be used.
var ErrBadKey = errors.New("srtpcheck: bad SRTP key")

// errNoLegKeys: Verify was given no key for one of the two legs.
var errNoLegKeys = errors.New("srtpcheck: verify needs keys for both legs")
