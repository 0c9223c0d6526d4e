package main

import (
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
)

// Compile-time guards: the store satisfies the interfaces the packages above
// it declare, without importing them.
var _ hub.IdemRecords = (*store.DB)(nil)
