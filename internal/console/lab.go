package console

// labRoutes registers the routes of the failure laboratory page.
func (c *Console) labRoutes() {}
