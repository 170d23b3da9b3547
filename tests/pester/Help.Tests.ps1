# Help is part of the product: every exported cmdlet has written help that Get-Help shows, and the platyPS markdown it
# is built from agrees with the cmdlet's real parameters, so the docs cannot drift from the code.
# Run: dotnet pwsh tests/pester/Invoke-GalliumPester.ps1 -ModulePath out/Gallium.PciPassthrough -Path tests/pester/Help.Tests.ps1

BeforeDiscovery {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1')
    Import-GalliumModule
    # Enumerated from the module, so a new cmdlet without a page fails here rather than going unnoticed.
    $cmdlets = @((Get-Module Gallium.PciPassthrough).ExportedCmdlets.Keys | Sort-Object | ForEach-Object { @{ Name = $_ } })
}

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1')
    Import-GalliumModule
    $Docs = Join-Path $env:GALLIUM_REPO 'docs/en-US'
    $Converter = Join-Path $env:GALLIUM_REPO 'tools/ConvertTo-MamlHelp.ps1'
    $Pages = @{}
    foreach ($page in & $Converter -DocsPath $Docs -AsModel) { $Pages[$page.Name] = $page }
    $Common = [System.Management.Automation.PSCmdlet]::CommonParameters

    # The markdown writes short type names (String[], PciDevice[]); either form of the real type matches.
    function Test-TypeName([string] $Written, [type] $Actual) {
        $Written -in @($Actual.Name, $Actual.FullName) -or ($Written -eq 'switch' -and $Actual -eq [switch])
    }
    function Get-Words([object] $Text) { (($Text | Out-String) -replace '\s+', ' ').Trim() }
}

Describe '<Name> help' -ForEach $cmdlets {
    BeforeAll {
        $command = Get-Command -Name $Name -Module Gallium.PciPassthrough
        $page = $Pages[$Name]
        $help = Get-Help -Name $Name -Full -ErrorAction Stop
    }

    It 'has a markdown page in docs/en-US' {
        $page | Should -Not -BeNullOrEmpty -Because "every exported cmdlet needs docs/en-US/$Name.md (platyPS schema 2.0.0)"
    }

    It 'shows the written synopsis, not the generated one' {
        $synopsis = Get-Words $help.Synopsis
        $synopsis | Should -Not -BeNullOrEmpty
        # Without help, Get-Help makes the synopsis from the syntax: "Name [[-Param] <type>] ...".
        $synopsis | Should -Not -Match "^$([regex]::Escape($Name))(\s|$)"
        $synopsis | Should -Be (Get-Words ($page.Synopsis -join ' ')) -Because 'Get-Help must read the MAML built from the markdown'
    }

    It 'has a description' {
        Get-Words $help.description.Text | Should -Not -BeNullOrEmpty
    }

    It 'has at least one example, each with code, and the same examples as the page' {
        $examples = @($help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 1
        $examples.Count | Should -Be $page.Examples.Count
        foreach ($e in $examples) { $e.code | Should -Not -BeNullOrEmpty -Because "example '$($e.title)' needs code" }
    }

    It 'describes every parameter' {
        $undescribed = foreach ($name in $command.Parameters.Keys | Where-Object { $_ -notin $Common }) {
            $p = $help.parameters.parameter | Where-Object name -eq $name
            if (-not $p -or -not (Get-Words $p.description.Text)) { $name }
        }
        $undescribed | Should -BeNullOrEmpty -Because 'Get-Help must describe every parameter'
    }

    It 'documents exactly the parameters the cmdlet has' {
        $real = @($command.Parameters.Keys | Where-Object { $_ -notin $Common } | Sort-Object)
        $written = @($page.Parameters.Name | Sort-Object)
        $written | Should -Be $real -Because 'the PARAMETERS section must list every parameter and nothing else'
    }

    It 'names the parameter sets the cmdlet has, and its default' {
        @($page.Sets.Name | Sort-Object) | Should -Be @($command.ParameterSets.Name | Sort-Object)
        if ($command.ParameterSets.Count -gt 1) {
            @($page.Sets | Where-Object IsDefault).Name | Should -Be $command.DefaultParameterSet -Because 'SYNTAX marks the default set "(Default)"'
        }
    }

    It 'agrees with the cmdlet on type, required, position, pipeline input, wildcards and aliases, set by set' {
        $drift = [System.Collections.Generic.List[string]]::new()
        foreach ($set in $command.ParameterSets) {
            foreach ($p in $set.Parameters | Where-Object { $_.Name -notin $Common }) {
                $doc = $page.Parameters | Where-Object Name -eq $p.Name
                if (-not $doc) { continue }  # reported by 'documents exactly the parameters'
                $v = $doc.Variants | Where-Object { $_.Sets -contains $set.Name -or $_.Sets -contains '(All)' } | Select-Object -First 1
                if (-not $v) { $drift.Add("-$($p.Name): no yaml block covers parameter set '$($set.Name)'"); continue }
                $position = if ($p.Position -lt 0) { 'Named' } else { "$($p.Position)" }
                $wildcards = [bool]($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
                if (-not (Test-TypeName $v.Type $p.ParameterType)) { $drift.Add("-$($p.Name) [$($set.Name)]: Type is $($v.Type), the cmdlet's is $($p.ParameterType.Name)") }
                if ($v.Required -ne $p.IsMandatory) { $drift.Add("-$($p.Name) [$($set.Name)]: Required is $($v.Required), the cmdlet's is $($p.IsMandatory)") }
                if ($v.Position -ne $position) { $drift.Add("-$($p.Name) [$($set.Name)]: Position is $($v.Position), the cmdlet's is $position") }
                if ($v.ByValue -ne $p.ValueFromPipeline) { $drift.Add("-$($p.Name) [$($set.Name)]: pipeline input ByValue is $($v.ByValue), the cmdlet's is $($p.ValueFromPipeline)") }
                if ($v.ByPropertyName -ne $p.ValueFromPipelineByPropertyName) { $drift.Add("-$($p.Name) [$($set.Name)]: pipeline input ByPropertyName is $($v.ByPropertyName), the cmdlet's is $($p.ValueFromPipelineByPropertyName)") }
                if ($v.Globbing -ne $wildcards) { $drift.Add("-$($p.Name) [$($set.Name)]: wildcards are $($v.Globbing), the cmdlet's [SupportsWildcards] says $wildcards") }
                if ((@($v.Aliases | Sort-Object) -join ',') -ne (@($p.Aliases | Sort-Object) -join ',')) { $drift.Add("-$($p.Name): Aliases are '$($v.Aliases -join ',')', the cmdlet's are '$($p.Aliases -join ',')'") }
            }
        }
        # And the other way: a yaml block may name only sets the parameter really is in.
        foreach ($doc in $page.Parameters | Where-Object { $command.Parameters.ContainsKey($_.Name) }) {
            $inSets = @($command.Parameters[$doc.Name].ParameterSets.Keys)
            $inAll = $inSets -contains '__AllParameterSets' -or @($command.ParameterSets.Name | Where-Object { $_ -notin $inSets }).Count -eq 0
            foreach ($s in $doc.Variants.Sets) {
                if ($s -eq '(All)' -and -not $inAll) { $drift.Add("-$($doc.Name): yaml says (All) but the parameter is only in $($inSets -join ', ')") }
                elseif ($s -ne '(All)' -and $s -notin $inSets -and -not $inAll) { $drift.Add("-$($doc.Name): yaml names set '$s', the parameter is in $($inSets -join ', ')") }
            }
        }
        $drift | Should -BeNullOrEmpty -Because "docs/en-US/$Name.md must match the cmdlet"
    }

    It 'lists every [OutputType] under OUTPUTS' {
        $written = @($page.Outputs.TypeName)
        $missing = foreach ($t in $command.OutputType) {
            if (-not ($written | Where-Object { $_ -in @($t.Name, $t.Type.FullName, $t.Type.Name) })) { $t.Name }
        }
        $missing | Should -BeNullOrEmpty -Because 'OUTPUTS must name what the cmdlet declares it writes'
    }
}

Describe 'about_Gallium_PciPassthrough' {
    BeforeAll {
        $about = Get-Help -Name about_Gallium_PciPassthrough -ErrorAction Stop
        $text = $about | Out-String
    }

    It 'is found by Get-Help as a help file topic' {
        $about.Category | Should -Be 'HelpFile'
        $about.Name | Should -Be 'about_Gallium_PciPassthrough'
    }

    It 'has its short description where Get-Help looks for it (line 5)' {
        $about.Synopsis | Should -Match '^Explains PCI passthrough'
    }

    It 'explains every error id, the existing and the planned ones' {
        $ids = 'PciAddressInvalid', 'PciDeviceNotFound', 'IommuGroupNotFound', 'PciDeviceNotInIommuGroup', 'IommuNotEnabled',
        'RootRequired', 'IommuGroupAssigned', 'PciDeviceHostCritical', 'PciDeviceHasVirtualFunctions', 'VfioPciUnavailable',
        'PciPassthroughStepFailed', 'HostLockTimeout', 'VmNotStopped', 'PciDeviceNotEnabled', 'PciDeviceAssigned',
        'LibvirtConnectionFailed', 'VmNotFound'
        $missing = $ids | Where-Object { $text -notmatch "(?m)^\s+$_\s*$" }
        $missing | Should -BeNullOrEmpty -Because 'the ERROR IDS section has one entry per id'
    }

    It 'has a row in its error table for every error id the code raises' {
        # Ids are the first string of an exception's constructor (or of MmioPlanner's Refuse): "<Noun><Condition>".
        $sources = Get-ChildItem -Path (Join-Path $env:GALLIUM_REPO 'src') -Recurse -Filter '*.cs'
        $raised = @($sources | ForEach-Object { [regex]::Matches((Get-Content -Raw $_.FullName), '(?:Exception|base|Refuse)\(\s*(?:plan,\s*)?"([A-Z][A-Za-z]+)"') } |
            ForEach-Object { $_.Groups[1].Value } | Sort-Object -Unique)
        $raised.Count | Should -BeGreaterThan 30 -Because 'the scan must find the ids (it did find 43 when written)'
        $page = Get-Content -Raw (Join-Path $env:GALLIUM_REPO 'docs/en-US/about_Gallium_PciPassthrough.md')
        $rows = @([regex]::Matches($page, '(?m)^\| (\w+) \|') | ForEach-Object { $_.Groups[1].Value })
        @($raised | Where-Object { $_ -notin $rows }) | Should -BeNullOrEmpty -Because 'every id needs a row: category, meaning, what to do'
    }

    It 'names the test seam and every environment variable the module reads' {
        foreach ($name in 'GalliumHostContext', 'GALLIUM_SYSFS_ROOT', 'GALLIUM_PROC_ROOT', 'GALLIUM_DEV_ROOT', 'GALLIUM_PCI_IDS',
            'GALLIUM_STATE_ROOT', 'LIBVIRT_DEFAULT_URI') {
            $text | Should -Match ([regex]::Escape($name))
        }
    }
}

Describe 'ConvertTo-MamlHelp' {
    BeforeAll {
        $good = Get-Content -Raw (Join-Path $Docs 'Get-GalliumPciDevice.md')
        # Writes one page (and nothing else) into a fresh folder and converts it; returns the error text, or $null.
        function Convert-Page([string] $Markdown, [string] $FileName = 'Get-GalliumPciDevice.md') {
            $dir = Join-Path $TestDrive ([guid]::NewGuid().ToString('n'))
            New-Item -ItemType Directory -Path "$dir/in" | Out-Null
            Set-Content -LiteralPath "$dir/in/$FileName" -Value $Markdown -NoNewline
            try { & $Converter -DocsPath "$dir/in" -OutputPath "$dir/out" -ModuleName Gallium.PciPassthrough; $null }
            catch { $_.Exception.Message }
        }
        function Get-LineOf([string] $Markdown, [string] $Needle) {
            $lines = $Markdown -split '\r?\n'
            for ($i = 0; $i -lt $lines.Count; $i++) { if ($lines[$i].Contains($Needle)) { return $i + 1 } }
            throw "'$Needle' not in the page"
        }
    }

    It 'converts the real page' {
        Convert-Page $good | Should -BeNullOrEmpty
    }

    It 'fails naming file and line when <Case>' -ForEach @(
        @{ Case = 'a yaml block lacks a key'; Find = 'Accept wildcard characters: True'; Replace = ''; At = 'Address' }
        @{ Case = 'Position is not a number'; Find = 'Position: 0'; Replace = 'Position: first'; At = 'Position: first' }
        @{ Case = 'pipeline input is misspelt'; Find = 'Accept pipeline input: True (ByPropertyName, ByValue)'; Replace = 'Accept pipeline input: True (ByName)'; At = 'True (ByName)' }
        @{ Case = 'a section is unknown'; Find = '## NOTES'; Replace = '## REMARKS'; At = '## REMARKS' }
        @{ Case = 'a parameter names a set SYNTAX lacks'; Find = 'Parameter Sets: (All)'; Replace = 'Parameter Sets: ByName'; At = '```yaml' }
    ) {
        $bad = ([regex]::new([regex]::Escape($Find))).Replace($good, $Replace, 1)
        $bad | Should -Not -Be $good
        $message = Convert-Page $bad
        $message | Should -Not -BeNullOrEmpty -Because 'a malformed page must fail the build'
        $message | Should -Match '^Get-GalliumPciDevice\.md:(\d+): '
        $line = [int]([regex]::Match($message, ':(\d+):').Groups[1].Value)
        # The line named is the offending one, or the heading/yaml block that holds it.
        $expected = if ($Case -eq 'a yaml block lacks a key') { Get-LineOf $bad '```yaml' }
        elseif ($Case -eq 'a parameter names a set SYNTAX lacks') {
            # the yaml block that holds the replaced line
            $yamlAt = $bad.LastIndexOf('```yaml', $bad.IndexOf($Replace))
            ($bad.Substring(0, $yamlAt) -split "`n").Count
        }
        else { Get-LineOf $bad $At }
        $line | Should -Be $expected
    }

    It 'fails naming the line of a code block that is never closed' {
        $bad = $good + "`n``````pwsh`nGet-GalliumPciDevice`n"
        Convert-Page $bad | Should -Match "^Get-GalliumPciDevice\.md:$(Get-LineOf $bad '```pwsh'): code block .* never closed"
    }

    It 'fails when a parameter has no description' {
        $bad = $good -replace '(?s)(### -Driver\r?\n).*?(```yaml)', '$1$2'
        Convert-Page $bad | Should -Match '^Get-GalliumPciDevice\.md:\d+: parameter -Driver has no description'
    }

    It 'escapes XML: angle brackets, ampersands and quotes come back as written' {
        $page = $good -replace 'Lists the host''s PCI functions', 'Lists <all> PCI functions & "more"'
        $dir = Join-Path $TestDrive 'escape'
        New-Item -ItemType Directory -Path "$dir/in" | Out-Null
        Set-Content -LiteralPath "$dir/in/Get-GalliumPciDevice.md" -Value $page -NoNewline
        & $Converter -DocsPath "$dir/in" -OutputPath "$dir/out" -ModuleName Gallium.PciPassthrough
        [xml] $maml = Get-Content -Raw "$dir/out/Gallium.PciPassthrough.dll-Help.xml"
        $ns = @{ command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'; maml = 'http://schemas.microsoft.com/maml/2004/10' }
        $synopsis = (Select-Xml -Xml $maml -XPath '//command:details/maml:description/maml:para' -Namespace $ns).Node.InnerText
        $synopsis | Should -BeLike 'Lists <all> PCI functions & "more"*'
    }

    It 'writes the sections in the order of pwsh''s own MAML' {
        $reference = Get-ChildItem -Path (Join-Path $PSHOME 'Modules') -Recurse -Filter '*.dll-Help.xml' -ErrorAction Ignore | Select-Object -First 1
        if (-not $reference) { Set-ItResult -Skipped -Because "this pwsh ($PSHOME) ships no MAML help file to compare with"; return }
        [xml] $theirs = Get-Content -Raw $reference.FullName
        $moduleHelp = Join-Path (Get-Module Gallium.PciPassthrough).ModuleBase 'en-US/Gallium.PciPassthrough.dll-Help.xml'
        [xml] $ours = Get-Content -Raw $moduleHelp
        $order = { param($command) @($command.ChildNodes | Where-Object NodeType -eq 'Element' | ForEach-Object LocalName) }
        $theirOrder = & $order @($theirs.helpItems.ChildNodes | Where-Object LocalName -eq 'command')[0]
        foreach ($command in $ours.helpItems.ChildNodes | Where-Object LocalName -eq 'command') {
            (& $order $command) | Should -Be $theirOrder -Because "$($reference.Name) orders a command's sections this way"
        }
    }
}
