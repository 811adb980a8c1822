package store

// Open opens (creating if needed) the bbolt store at path. It fails with
// ErrLocked when another process holds the file.
//
// CONTRACT: filled in by the store implementation.
func Open(path string, opts Options) (Store, error) { panic("not implemented") }
