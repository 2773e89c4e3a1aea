# Metrics and alerting: a retention setting from the role's attributes, a data directory.
directory '/var/lib/monitoring' do
  owner 'root'
  mode '0750'
  recursive true
end

file '/etc/monitoring.conf' do
  content "retention_days=#{node['retention_days'] || 15}\n"
  mode '0644'
end
