"""Members as of a moment (某一时点的党员名册): validity periods of every member
state, answered from the read model or by replaying the store."""
