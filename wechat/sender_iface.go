package wechat

// Outgoing is one message wxreply has accepted to send to a user: a
// customer-service message or a template message, never both. It carries
// what the logs and the push API's status need to say where it came from.
type Outgoing struct {
	ID       string           // unique; the push API reports status by it
	Rule     string           // the rule that produced it, empty for pushes
	InMsgID  string           // the inbound MsgId (or event key) that caused it
	Custom   *CustomMessage   // touser set
	Template *TemplateMessage // touser set
}
