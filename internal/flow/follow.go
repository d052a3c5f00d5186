package flow

// FollowPath is the streaming endpoint of `palisade flows follow` (served
// by internal/flow/flowapi).
const FollowPath = "/api/v1/flows/follow"
